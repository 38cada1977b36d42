from cadence.entry import main

main()
