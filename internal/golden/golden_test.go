package golden_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/golden"
)

func TestJSON(t *testing.T) {
	t.Parallel()
	ev := &callledgerv1.Event{
		EventId: "7751a70a-3fa8-5212-baed-ace26524a1d2", CallSid: "CAc088e8a85c1fb7af418617ca34e416b5",
		Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK, ReceivedAt: timestamppb.New(time.Date(2026, 3, 26, 16, 1, 53, 400e6, time.UTC)),
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
			StatusRaw: "completed", SequenceNumber: proto.Int64(3),
		}},
	}
	got, err := golden.JSON(ev)
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "{\n  \"event_id\": \"7751a70a-3fa8-5212-baed-ace26524a1d2\",\n  \"call_sid\": \"CAc088e8a85c1fb7af418617ca34e416b5\",\n  \"source\": \"SOURCE_STATUS_CALLBACK\",\n"
	if len(got) < len(prefix) || string(got[:len(prefix)]) != prefix {
		t.Errorf("JSON starts\n%s\nwant\n%s", got, prefix)
	}
	back := &callledgerv1.Event{}
	if err := protojson.Unmarshal(got, back); err != nil || !proto.Equal(back, ev) {
		t.Errorf("JSON does not read back: %v\n%s", err, got)
	}
	if again, _ := golden.JSON(ev); string(again) != string(got) {
		t.Error("two renderings differ")
	}
}
