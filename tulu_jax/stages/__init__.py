"""One module per recipe stage; each wires data → model → objective → step → the shared training loop."""
