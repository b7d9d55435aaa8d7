#!/usr/bin/env bash
# Shows that `buf breaking` against the committed baseline fails on the
# changes that would make stored events read differently: each case copies
# proto/ to a temporary directory, makes one change, and expects buf to
# report it under the named rule. The unchanged copy must pass first, so a
# failure is the change's and not the setup's. Run by `make breaking`.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=${1:-proto/baseline.binpb}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

copy() {
	rm -rf "$tmp/ws"
	mkdir -p "$tmp/ws"
	cp -R buf.yaml proto "$tmp/ws/"
	rm -f "$tmp/ws/$baseline"
}

against=$(realpath "$baseline")
copy
(cd "$tmp/ws" && buf breaking --against "$against") || {
	echo "breaking-detects: the unchanged copy of proto/ fails against $baseline" >&2
	exit 1
}

# file | sed expression | rule buf must report | what the change is
cases=(
	"callledger/v1/event.proto|/^message Event {/,/^}/ s/^  string call_sid = 2;/  string call_sid = 6;/|FIELD_NO_DELETE|Event.call_sid renumbered 2 -> 6"
	"callledger/v1/event.proto|/^message Event {/,/^}/ s/^    HangupSent hangup_sent = 15;/    HangupSent hangup_sent = 99;/|FIELD_NO_DELETE|the oneof body hangup_sent renumbered 15 -> 99 (a free number)"
	"callledger/v1/event.proto|/^message CallStatusReported {/,/^}/ { s/^  string status_raw = 2;/  string status_raw = 3;/; s/^  optional int64 sequence_number = 3;/  optional int64 sequence_number = 2;/; }|FIELD_SAME_TYPE|CallStatusReported.status_raw and sequence_number swap numbers"
	"callledger/v1/event.proto|/^message HangupRequested {/,/^}/ s/^  string request_id = 1;/  int64 request_id = 1;/|FIELD_SAME_TYPE|HangupRequested.request_id changes type, string -> int64"
	"callledger/v1/event.proto|/^message CallReconciled {/,/^}/ { /^  bool not_found = 12;/d; }|FIELD_NO_DELETE|CallReconciled.not_found removed"
)
for c in "${cases[@]}"; do
	IFS='|' read -r file expr rule what <<<"$c"
	copy
	sed -i.orig -e "$expr" "$tmp/ws/proto/$file"
	if cmp -s "$tmp/ws/proto/$file" "$tmp/ws/proto/$file.orig"; then
		echo "breaking-detects: '$expr' changes nothing in $file: the case is stale" >&2
		exit 1
	fi
	rm "$tmp/ws/proto/$file.orig"
	set +e
	out=$(cd "$tmp/ws" && buf breaking --against "$against" --error-format json 2>&1)
	rc=$?
	set -e
	if [[ $rc -eq 0 ]] || ! grep -q "\"type\":\"$rule\"" <<<"$out"; then
		echo "breaking-detects: buf breaking missed: $what (exit $rc, want $rule)" >&2
		echo "$out" >&2
		exit 1
	fi
	echo "buf breaking fails, as it must, on: $what ($rule)"
done
