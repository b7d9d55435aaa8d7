package server

import (
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	keystorev1 "github.com/callledger/callledger/api/callledger/keystore/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpcauth"
)

// Policy is the authorization rule of every gRPC method the server
// serves, one line each: a new RPC gets its line here, or New refuses to
// start (grpcauth.Policy.Check), so that no method ships open. The scopes
// are those of docs/SECURITY.md.
func Policy() grpcauth.Policy {
	var (
		read   = grpcauth.Require(grpcauth.ScopeCallsRead)
		hangup = grpcauth.Require(grpcauth.ScopeCallsHangup)
		admin  = grpcauth.Require(grpcauth.ScopeProjectionsAdmin)
		erase  = grpcauth.Require(grpcauth.ScopePersonalErase)
		keys   = grpcauth.Require(grpcauth.ScopeKeysUse)
	)
	return grpcauth.Policy{
		// Health stays open: load balancers and orchestrators probe
		// without credentials, and it tells nothing but serving or not.
		healthpb.Health_Check_FullMethodName: grpcauth.Open(),
		healthpb.Health_Watch_FullMethodName: grpcauth.Open(),
		healthpb.Health_List_FullMethodName:  grpcauth.Open(),
		// Reflection shows the API's shape, no data: any principal.
		reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      grpcauth.Authenticated(),
		reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: grpcauth.Authenticated(),

		callledgerv1.CallQueryService_GetCall_FullMethodName:          read,
		callledgerv1.CallQueryService_ListCalls_FullMethodName:        read,
		callledgerv1.CallQueryService_WatchCalls_FullMethodName:       read,
		callledgerv1.CallQueryService_ListCallEvents_FullMethodName:   read,
		callledgerv1.CallQueryService_GetStats_FullMethodName:         read,
		callledgerv1.CallQueryService_GetConference_FullMethodName:    read,
		callledgerv1.CallQueryService_ListConferences_FullMethodName:  read,
		callledgerv1.CallQueryService_WatchConferences_FullMethodName: read,

		callledgerv1.CallCommandService_RequestHangup_FullMethodName: hangup,

		callledgerv1.ProjectionService_GetProjectionStatus_FullMethodName: admin,
		callledgerv1.ProjectionService_RebuildProjection_FullMethodName:   admin,

		callledgerv1.AdminService_Backup_FullMethodName: admin,
		callledgerv1.AdminService_Erase_FullMethodName:  erase,

		// Served with sealing on KurrentDB only (webhook replicas).
		keystorev1.KeyService_Key_FullMethodName:     keys,
		keystorev1.KeyService_GetKey_FullMethodName:  keys,
		keystorev1.KeyService_GetKeys_FullMethodName: keys,
	}
}
