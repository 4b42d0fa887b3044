"""gancourse: the GAN course's tools, beside the library the notebooks teach (`ganlib`), which never imports them.

- `checks`: the exercise checks, instant feedback in the notebooks and what the grader scores;
- `grading`: `grade`, the grader and its sandbox;
- `notebooks`: notebooks stored clean, `exercises/` generated from `solutions/`; `repo`: `set-repo`;
- `recipes`: each model's presets per profile and `make_trainer`, what `train` and the notebooks run;
- `evaluation`: the offline judges, the feature extractors and the `evaluate` command;
- `datasets`: every dataset by name, the downloaded ones and `folder:PATH` too; `launch`: torchrun's process group
  and the run folder's lock, around `train`; `widgets`: the notebooks' sliders;
- `bench`: the benchmarks behind `docs/benchmarks.md`, and `results`, the figures a chapter reads from them;
- `__main__`: the command line, ``python -m gancourse {train, sample, evaluate, bench, make-exercises, grade,
  set-repo}``.
"""
