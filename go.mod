module github.com/gopresence/presence

go 1.26
