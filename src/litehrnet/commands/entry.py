"""Entry points that must act before MindSpore is imported (kept light: nothing heavy at module level)."""
import signal


def train_entry():
    """`litehrnet-train`: SIGINT/SIGTERM blocked in every thread before MindSpore starts any (the trainer then
    takes them itself, see engine/trainer.py), then the command."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    from .train import main  # after the mask: MindSpore's threads inherit it
    return main()
