"""A torchrun entry point for the restart test: bcls's CLI, except that on torchrun's first attempt the rank named
by ``$KILL_RANK`` ends itself with SIGKILL at epoch 2, step 1 (a process or machine lost mid-epoch)."""

import os
import signal
import sys

from bcls.cli import main
from bcls.trainer import train as train_module

if os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0" and os.environ.get("RANK") == os.environ.get("KILL_RANK"):
    step = train_module.Trainer.step

    def step_or_die(self, batch, epoch, index):
        if (epoch, index) == (2, 1):
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, batch, epoch, index)

    train_module.Trainer.step = step_or_die

if __name__ == "__main__":
    sys.argv[0] = "bcls"
    main()
