package containerd

// Each run has a private directory StateDir/containerd/runs/<id> (0700) holding its FIFOs and,
// for copy mounts, the overlay layers (package rundir). It is removed before Run returns; Reap
// removes those of dead owners.

// fifoDir is the run-dir directory holding the stdio FIFOs.
const fifoDir = "fifo"
