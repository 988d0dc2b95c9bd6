"""Status early warning at run time: the rules service, live push, backtests."""
