module github.com/gopresence/presence

go 1.26

require github.com/gorilla/websocket v1.5.3

require (
	go.uber.org/goleak v1.3.0 // indirect
	pgregory.net/rapid v1.3.0 // indirect
)
