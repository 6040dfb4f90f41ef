"""Config checks shared by the tasks that read tables (classification, regression, multilabel)."""


def table_problems(config, task=None) -> list[str]:
    """A table's column options must not contradict each other: only `task`'s own outputs option
    (regression's `targets`, ...; none for one label column), no repeated names, no column both
    categorical and numeric."""
    from dlcli.tasks.registry import TASKS

    dataset = config.data.dataset
    problems = []
    for other in TASKS.values():
        key = other.dataset_outputs
        if not key or not other.reads_dataset(dataset.get("name")):
            continue  # a timeseries's targets are what it forecasts
        given = dataset.get(key)
        if other is not task and given is not None:
            problems.append(f"data.dataset.{key}: {key} mean task: {other.name}, not {config.task} (leave task "
                            f"out, or remove {key})")
        names = [given] if isinstance(given, str) else given
        if isinstance(names, list) and len(set(map(str, names))) < len(names):
            problems.append(f"data.dataset.{key}: {sorted({n for n in names if names.count(n) > 1})} "
                            f"named more than once")
    for key in ("features", "categorical", "numeric"):
        names = dataset.get(key)
        if isinstance(names, list) and len(set(map(str, names))) < len(names):
            problems.append(f"data.dataset.{key}: {sorted({str(n) for n in names if names.count(n) > 1})} "
                            f"named more than once")
    problems += _output_name_problems(dataset)
    both = sorted(set(dataset.get("categorical") or []) & set(dataset.get("numeric") or []))
    if both:
        problems.append(f"data.dataset.categorical: {both} also in data.dataset.numeric; a column is one or the other")
    return problems


# Fields of infer's output rows: an output column of the same name would overwrite them.
RESERVED = ("input", "labels", "unseen")


def _output_name_problems(dataset: dict) -> list[str]:
    """Output columns (targets, labels) must not be named like infer's own fields, nor be the weight."""
    problems = []
    for key in ("targets", "labels"):
        names = dataset.get(key)
        names = [names] if isinstance(names, str) else names if isinstance(names, list) else []
        clash = [n for n in names if n in RESERVED]
        if clash:
            problems.append(f"data.dataset.{key}: {clash} would be overwritten in infer's output, whose rows use "
                            f"{', '.join(RESERVED)}; rename the column(s)")
        weight = dataset.get("weight")
        if weight is not None and weight in names:
            problems.append(f"data.dataset.weight: {weight!r} is also one of the {key}")
    return problems
