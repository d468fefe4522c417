"""Order manager and executor: approve, swap, receipt, fills; paper mode by simulation."""
