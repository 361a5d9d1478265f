"""One training run: `run` (`train`: the loop with the in-run monitor and the plots), `setup` (validation before
anything is written), `trainer` (`fit`, the bare loop: set-up, one optimizer step, log, save, finish),
`loop_state` (the counters a checkpoint saves), `cadence` (when work is due), `stopping` (why a run stops early),
`objective` (config -> `daa_objective`), `optimizer`, `data_order` (the seeded epoch order), `reference_cache`,
`checkpoint`, `final_model`, `runlog` (`metrics.jsonl`), `callbacks` (the hooks the loop calls)."""
