from aca_kernel.emulator.cli import main

raise SystemExit(main(prog="python -m aca_kernel.emulator"))
