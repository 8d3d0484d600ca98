package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

func flowsCommand() *cli.Command {
	return listing[maps.Flow]{
		name:   "flows",
		usage:  "list the data flows admitted through an expectation",
		header: "KIND\tFROM\tTO\tAGE\tPACKETS\tBYTES\tSTATE\tCONTROL CONNECTION",
		read:   (*maps.Maps).ListFlows,
		order:  func(a, b maps.Flow) int { return int(a.AgeMs - b.AgeMs) },
		row: func(f maps.Flow) string {
			state := "open"
			if f.Closed {
				state = "closed"
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s", f.Kind, joinHostPort(f.Src, f.SPort), withInside(joinHostPort(f.Dst, f.DPort), f.Inside),
				f.Age.Round(time.Second), f.Packets, f.Bytes, state, control(f.Control))
		},
	}.command()
}
