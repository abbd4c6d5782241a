from prcrs_batch.cli import main

main()
