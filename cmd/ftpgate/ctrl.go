package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

func ctrlCommand() *cli.Command {
	return listing[maps.Conn]{
		name:   "ctrl",
		usage:  "list the FTP control connections being parsed",
		header: "CLIENT\tSERVER\tAGE\tIDLE\tLINES C/S\tPENDING\tSTATE\tTLS",
		read:   (*maps.Maps).ListConns,
		order:  func(a, b maps.Conn) int { return int(a.AgeMs - b.AgeMs) },
		row: func(k maps.Conn) string {
			state := "open"
			if k.Closing {
				state = "closing"
			}
			pending := k.Pending
			if pending == "" {
				pending = "-"
			}
			tls := "-"
			if k.Encrypted {
				tls = k.TLS
			}
			ms := func(v int64) time.Duration { return (time.Duration(v) * time.Millisecond).Round(time.Second) }
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s", joinHostPort(k.Client, k.ClientPort), joinHostPort(k.Server, k.ServerPort),
				ms(k.AgeMs), ms(k.IdleMs), k.ClientLines, k.ServerLines, pending, state, tls)
		},
	}.command()
}
