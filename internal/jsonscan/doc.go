// Package jsonscan walks JSON text in place, without decoding it: skip a
// value, visit the fields of an object or the elements of an array, take a
// string's raw contents. It allocates nothing, so that the hot readers of
// frames and payloads (the load tool's view of a room, the V2 frame
// envelope) keep their speed.
//
// The scanner checks the structure (brackets, quotes, separators), not every
// detail of the grammar: every valid JSON text scans, and scans to what
// encoding/json sees in it (FuzzScan), but some invalid texts scan too
// (a bare word such as tru, a control character inside a string). A caller
// that must refuse what encoding/json refuses checks with json.Valid first.
package jsonscan
