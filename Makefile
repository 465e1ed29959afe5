# A thin index of the project's commands; the README has the two that matter.
.PHONY: run test race bench fuzz lint
run:
	go run ./cmd/presenced
test:
	go test ./...
race: # the whole suite, as CI runs it
	./test.sh
bench:
	go test -run '^$$' -bench . -benchmem ./...
fuzz:
	go test -run '^$$' -fuzz FuzzDecode -fuzztime 60s ./internal/wire
	go test -run '^$$' -fuzz FuzzOps -fuzztime 60s ./internal/crdt
lint:
	go vet ./... && test -z "$$(gofmt -l .)"
