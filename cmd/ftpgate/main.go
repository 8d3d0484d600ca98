// Command ftpgate runs and inspects the ftpgate FTP gateway.
package main

import "os"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}
