"""The command lines (`src/train.py` ..., and the `litehrnet-train` ... entry points): each module's `main(argv)`."""
import os

os.environ.setdefault('GLOG_v', '3')  # MindSpore: errors only on the console (read when it is first imported)
