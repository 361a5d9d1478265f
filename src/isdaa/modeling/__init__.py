"""Models: loading the policy, reference and tokenizer; sequence log-probs; the tiny test model; preparing real
models offline. Knows nothing about losses."""
