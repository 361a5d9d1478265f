"""One training run: `run` (`train`: the loop with the in-run monitor and the plots), `setup` (validation before
anything is written; builds the objective once), `trainer` (`fit`, the bare loop: set-up, one optimizer step, log,
save, finish), `loop_state` (the counters a checkpoint saves), `cadence` (when work is due), `stopping` (why a run
stops early), `run_models` (the run's policy and reference), `optimizer`, `data_order` (the seeded epoch order),
`reference_cache`, `checkpoint`, `final_model`, `runlog` (`metrics.jsonl`), `callbacks` (the hooks the loop
calls)."""
