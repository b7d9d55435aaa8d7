package callexport_test

import (
	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/projections/callstate"
)

func viewOf(r *statev1.CallRecord) *callledgerv1.Call { return callstate.View(r) }
