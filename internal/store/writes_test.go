package store

import "context"

// The shapes of Write the store's tests use, each named for what it does.

// createTask creates t with events and waits: the earlier task and true
// when t's idempotency key found one, else t (Arrival set) and false.
func createTask(ctx context.Context, db DB, t *Task, events []Event) (*Task, bool, error) {
	p := db.Write(ctx, Batch{Create: t, Events: events})
	if err := p.Wait(); err != nil {
		return nil, false, err
	}
	if dup := p.Duplicate(); dup != nil {
		return dup, true, nil
	}
	return t, false, nil
}

func createQueued(ctx context.Context, db DB, t *Task, events []Event) *Pending {
	return db.Write(ctx, Batch{Create: t, Events: events})
}

func updateTask(ctx context.Context, db DB, t *Task, events []Event) error {
	return db.Write(ctx, Batch{Update: t, Events: events}).Wait()
}

func updateQueued(ctx context.Context, db DB, t *Task, events []Event) *Pending {
	return db.Write(ctx, Batch{Update: t, Events: events})
}

func appendEvents(ctx context.Context, db DB, events []Event) error {
	return db.Write(ctx, Batch{Events: events}).Wait()
}

func appendDetached(db DB, events []Event) {
	db.Write(context.Background(), Batch{Events: events, Detached: true})
}
