package main

import (
	"fmt"
	"strings"

	"github.com/ftpgate/ftpgate/maps"
)

func joinHostPort(a fmt.Stringer, port uint16) string {
	s := a.String()
	if strings.Contains(s, ":") {
		return fmt.Sprintf("[%s]:%d", s, port)
	}
	return fmt.Sprintf("%s:%d", s, port)
}

func control(c maps.Control) string {
	return joinHostPort(c.Client, c.ClientPort) + " -> " + joinHostPort(c.Server, c.ServerPort)
}
