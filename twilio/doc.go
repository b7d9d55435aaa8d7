// Package twilio turns Twilio Voice webhooks into callledger events. It is
// transport-free: an HTTP adapter hands it the raw request URI, body and
// headers; it checks X-Twilio-Signature and derives the events to append.
// Kinds lists the webhook routes it serves: call status callbacks, <Dial
// action> callbacks, recording status callbacks and the Event Streams
// webhook sink.
//
// # Verification
//
// Verifier checks X-Twilio-Signature as Twilio signs it, on the URL public
// URL + raw request URI (fragment removed): the URL, then each form
// parameter name in byte order followed by each of its distinct values in
// byte order (as twilio-python and twilio-node check it), or the URL alone
// for a JSON body bound by its bodySHA256 query parameter. It accepts what
// twilio-go's client.RequestValidator.ValidateBody accepts wherever the two
// sign the same message, quirks included, kept on purpose so that the
// differential tests can prove it: a body url.ParseQuery rejects (a ';', a
// bad %-escape, more parameters than net/url allows) never verifies; the URL
// is also tried with its port added (:443, :80) or removed. twilio-go signs
// only the first value of a repeated parameter: a request that verifies
// under that reading alone, another value appended to a captured one, is
// refused.
//
// The tokens are those of the account the request's AccountSid names, from
// a Keyring the Verifier swaps atomically on reload: Twilio signs a
// subaccount's webhooks with the subaccount's own token. The common path
// computes one HMAC per token and allocates nothing; the port variant is
// built only after a mismatch.
//
// # Events
//
// Derive never fails and never drops a verified request. A callback whose
// parameters parse and name a valid CallSid becomes one event in the
// stream of that call (the parent's for Dial actions and recordings); an
// Event Streams delivery becomes one event per voice status-callback
// CloudEvent, in the stream of its data.sid. Everything else is stored
// verbatim as a RequestQuarantined event in quarantine-<kind>.
//
// Event IDs are UUIDv5 (eventcodec.EventID) over the kind and the sorted,
// length-prefixed parameters of a callback, or the CloudEvent id, or, in
// quarantine, the raw query and body (or the CloudEvent's id or bytes):
// a retry maps to the same ID and the store writes it once.
//
// Choices the design leaves open, made here:
//   - Normalized fields take the first value of a repeated parameter, as
//     url.Values.Get does. Numbers that do not parse stay
//     unset. ParentCallSid and DialCallSid are set only when they are valid
//     CallSids, because they link calls; the raw request keeps any value.
//   - Proto3 string fields must be UTF-8, or the event cannot be encoded.
//     Twilio sends ASCII; otherwise invalid bytes become U+FFFD, and in the
//     URL %XX, which keeps its meaning. The body is stored byte for byte.
//   - Headers are stored sorted by name, values in received order, without
//     Authorization, Proxy-Authorization and Cookie.
//   - A CloudEvent without an id is quarantined: an ID derived from nothing
//     would make every such event a duplicate of the first. The same id
//     twice in one delivery is one event. A delivery of more than 100
//     CloudEvents (Twilio sends one) is quarantined whole, bounding the
//     cost of a delivery that each event would carry.
//   - reported_at is Twilio's Timestamp parameter (RFC 2822, one- or
//     two-digit day), then, for Event Streams, data.timestamp, then the
//     CloudEvent time.
package twilio
