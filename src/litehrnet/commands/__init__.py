"""The command lines (`src/train.py` ..., and the `litehrnet-train` ... entry points): each module's `main(argv)`."""
import os
import signal
import sys

os.environ.setdefault('GLOG_v', '3')  # MindSpore: errors only on the console (read when it is first imported)


def program_name(command):
    """How the running command is called in its messages: 'litehrnet-train' as an entry point, else 'train.py'."""
    return f'litehrnet-{command}' if os.path.basename(sys.argv[0]) == f'litehrnet-{command}' else f'{command}.py'


def train_entry():
    """`litehrnet-train`: SIGINT/SIGTERM blocked in every thread before MindSpore starts any (the trainer then
    takes them itself, see engine/trainer.py), then the command."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    from .train import main  # after the mask: MindSpore's threads inherit it
    return main()
