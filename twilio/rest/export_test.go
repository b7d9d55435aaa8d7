package rest

// ParseAccounts exposes the accounts-file parser to the fuzz test.
var ParseAccounts = parseAccounts
