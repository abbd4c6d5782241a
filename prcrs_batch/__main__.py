from prcrs_batch.app.cli import main

main()
