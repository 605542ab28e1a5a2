module github.com/fleetwire/fleetwire

go 1.26
