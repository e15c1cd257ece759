package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// Last states are kept per plan and instance, a later Put replaces an
// earlier one, and they are there again after the store is reopened,
// however busy its own writer was meanwhile.
func TestLastStatesSurviveReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openSQLite(t, dir, Options{})
	ls, err := OpenLastStates(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 5)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the store's writer commits while the states are written
		defer wg.Done()
		for i := range 50 {
			id := fmt.Sprintf("t%d", i)
			if err := s.Write(ctx, Batch{Create: newTask(id), Events: queued(id)}).Wait(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	puts := []LastState{
		{Plan: "phone", Pool: "device", Instance: "emu-1", State: "locked", TaskID: "a", Time: at},
		{Plan: "phone", Pool: "device", Instance: "emu-2", State: "app_open", TaskID: "b", Time: at},
		{Plan: "phone", Pool: "device", Instance: "emu-1", State: "app_open", TaskID: "c", Time: at.Add(time.Second)},
		{Plan: "session", State: "lobby", TaskID: "d", Time: at},
		{Plan: "phone", Pool: "device", Instance: "emu-2", State: "", TaskID: "e", Time: at.Add(2 * time.Second)},
	}
	for _, p := range puts {
		if err := ls.Put(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := ls.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openSQLite(t, dir, Options{})
	ls, err = OpenLastStates(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	got, err := ls.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []LastState{puts[2], puts[4], puts[3]}
	if !slices.EqualFunc(got, want, func(a, b LastState) bool { return a == b || (a.Time.Equal(b.Time) && withoutTime(a) == withoutTime(b)) }) {
		t.Fatalf("last states\n%+v\nwant\n%+v", got, want)
	}
}

func withoutTime(ls LastState) LastState {
	ls.Time = time.Time{}
	return ls
}
