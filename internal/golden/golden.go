// Package golden renders protobuf messages for files committed beside
// tests (golden files, the stored-event corpus), where the same message
// must give the same bytes on every run and in every version.
package golden

import (
	"bytes"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// JSON renders m as protojson with proto field names, indented by
// encoding/json: protojson varies its whitespace on purpose, so that no one
// compares its bytes.
func JSON(m proto.Message) ([]byte, error) {
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("golden: %w", err)
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return nil, fmt.Errorf("golden: %w", err)
	}
	return b.Bytes(), nil
}
