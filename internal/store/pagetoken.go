package store

// PageTokenAfter is the ListTasks page token that continues a listing
// right after the task that arrived at arrival (Task.Arrival): a listing
// that merges several stores' pages (a cluster's) resumes each store
// after the last of its tasks it used.
func PageTokenAfter(arrival uint64) string { return encodePageToken(arrival) }
