package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

func expectationsCommand() *cli.Command {
	return listing[maps.Expectation]{
		name:   "expectations",
		usage:  "list the live expectations (negotiated data connections not yet made)",
		header: "KIND\tFROM\tTO\tEXPIRES IN\tCONTROL CONNECTION\tORIGIN",
		read: func(m *maps.Maps) ([]maps.Expectation, error) {
			list, err := m.ListExpectations()
			// expired entries the ager has not reclaimed yet admit nothing
			return slices.DeleteFunc(list, maps.Expectation.Expired), err
		},
		order: func(a, b maps.Expectation) int { return int(a.ExpiresIn - b.ExpiresIn) },
		row: func(e maps.Expectation) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", e.Kind, e.Src, withInside(joinHostPort(e.Dst, e.DPort), e.Inside),
				e.ExpiresIn.Round(time.Second), control(e.Control), origin(e.Origin))
		},
	}.command()
}

// origin says where an expectation was made: here, or by the group peer
// whose tag it carries (`status` shows each peer's tag).
func origin(tag uint32) string {
	if tag == 0 {
		return "local"
	}
	return fmt.Sprintf("peer %08x", tag)
}
