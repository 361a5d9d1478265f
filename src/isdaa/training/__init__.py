"""One training run: `setup` (validation before anything is written), `trainer` (the loop: set-up, one
optimizer step, log, save, finish; the objective is built once by `setup`), `optimizer`, `data_order`
(the seeded epoch order), `reference_cache`, `checkpoint`, `final_model`, `runlog` (`metrics.jsonl`),
`callbacks` (the hooks the loop calls), `runtime` (threads, process group, atomic writes)."""
