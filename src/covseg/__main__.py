"""`python -m covseg` runs the CLI; `torchrun -m covseg train ...` starts distributed training."""

from covseg.cli import main

if __name__ == "__main__":
    main()
