"""HTTP facade and command line of the FlowViz ledger."""
