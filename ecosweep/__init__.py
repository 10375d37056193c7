"""ecosweep: the energy of LLM inference under precision, batch-size and hardware choices."""

import time

__version__ = "0.1.0"

# When this process first imported ecosweep (unix seconds): the driver's timing falls back to it where the
# process's own creation time belongs to an older program (cli.run.process_start_unix_s).
IMPORTED_UNIX_S = time.time()
