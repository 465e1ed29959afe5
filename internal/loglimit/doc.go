// Package loglimit guards a log against the clients it writes about: a
// handler that truncates long string values (an Origin header, a vsn, a
// topic are chosen by whoever sends the request) and lets each message
// through at a bounded rate, folding the rest into a count carried by the
// next record of that message that gets through.
package loglimit
