"""What every command uses: params.yaml's typed loader and the paths, the one-line error, the command
shell, write-then-rename files, progress display, and where work runs (devices, CPU shares)."""
