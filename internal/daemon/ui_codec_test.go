package daemon

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The web UI's in-process API hands messages over without encoding them:
// what arrives is what was sent, a request larger than the public API
// takes is refused as it would be there, and a ticket is good once.
func TestHandoffCodecPassesMessagesAsSent(t *testing.T) {
	client, server := newHandoffCodecs(1 << 10)
	in, _ := structpb.NewStruct(map[string]any{"serial": "emulator-5554", "n": 3})
	sent := &aurav1.SubmitRequest{Task: "farm/flash", Inputs: in, ResourceTags: []string{"device:a"}, Labels: map[string]string{"team": "qa"}}
	ticket, err := client.Marshal(sent)
	if err != nil {
		t.Fatal(err)
	}
	got := &aurav1.SubmitRequest{Task: "left over"}
	if err := server.Unmarshal(ticket, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, sent) {
		t.Errorf("got %v, want %v", got, sent)
	}
	if err := server.Unmarshal(ticket, &aurav1.SubmitRequest{}); err == nil || !strings.Contains(err.Error(), "not parked") {
		t.Errorf("a ticket used twice: %v, want an error", err)
	}

	big := &aurav1.SubmitRequest{Task: "farm/flash", Labels: map[string]string{"k": strings.Repeat("x", 2<<10)}}
	if _, err := client.Marshal(big); err == nil || !strings.Contains(err.Error(), "more than the 1024") {
		t.Errorf("a request over the limit: %v, want refused", err)
	}
	// Answers have no such limit on the server's side (gRPC sends any size).
	ticket, err = server.Marshal(&aurav1.ListTasksResponse{NextPageToken: strings.Repeat("x", 2<<10)})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Unmarshal(ticket, &aurav1.GetTaskRequest{}); err == nil || !strings.Contains(err.Error(), "want a aura.v1.GetTaskRequest") {
		t.Errorf("a message of another type: %v, want refused", err)
	}
}
