package instrument

import (
	"context"

	"github.com/callledger/callledger/eventstore"
)

// Subscriptions returns s with every subscription it opens passed through
// wrap. It is a test seam: end-to-end tests record what a projection is
// delivered, which the read model's idempotence would hide.
func Subscriptions(s eventstore.Store, wrap func(eventstore.Subscription) eventstore.Subscription) eventstore.Store {
	return decorate(&hooked{Store: s, wrap: wrap}, s)
}

type hooked struct {
	eventstore.Store
	wrap func(eventstore.Subscription) eventstore.Subscription
}

func (h *hooked) SubscribeAll(ctx context.Context, from eventstore.Position, filter eventstore.Filter) (eventstore.Subscription, error) {
	sub, err := h.Store.SubscribeAll(ctx, from, filter)
	if err != nil {
		return nil, err
	}
	return h.wrap(sub), nil
}
