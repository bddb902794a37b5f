"""A sweep is the same sweep when it is read back from its frozen spec: the property, over every shipped preset
and over generated specs holding every kind of option value (lists, nested mappings, numbers written as 5e-4,
strings that look like numbers or booleans).

The plan's comparison is what is tested (`plan_sweep` against a store holding the frozen spec, and
`plan_resume`), not a model's equality: a list and a tuple were equal models and two test sets to the plan.
The paper presets' full grids need the user's CINIC-10 (tens of thousands of images) to plan, so for them the
comparison's data-free parts are checked (`grid_fields`, `eval_set_meanings`); every preset's scale-down and the
digits presets are planned for real. A sweep run, resumed, run again and extended is in test_crash.py.
"""

from __future__ import annotations

import sys
from decimal import Decimal

import pytest
from conftest import PLUGINS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augworth.orchestrator.plan import plan_resume, plan_sweep
from augworth.results import Store
from augworth.search_spaces import apply_smoke, load_spec, parse_spec, preset_names, preset_path
from augworth.search_spaces.options import canonical_options

sys.path.insert(0, str(PLUGINS))  # the plugin that registers components taking any options


def frozen_again(text: str, source: str, store: Store) -> tuple[str, str, str]:
    """Freeze a new sweep as a run does, then plan the spec again, its frozen text, and a resume."""
    plan = plan_sweep(text, source, store)
    assert plan.frozen == "new"
    store.write_spec(plan.spec.name, plan.spec.to_yaml())
    return (plan_sweep(text, source, store).frozen, plan_sweep(store.read_spec(plan.spec.name), "frozen", store).frozen,
            plan_resume(store, plan.spec.name).frozen)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_and_its_scale_down_read_back_as_the_same_sweep(name):
    full = load_spec(preset_path(name))
    for spec in [full] + ([apply_smoke(full)] if full.smoke is not None else []):
        again = parse_spec(spec.to_yaml(), "frozen")
        assert again.grid_fields() == spec.grid_fields()
        assert again.eval_set_meanings() == spec.eval_set_meanings()


RUNNABLE = [(name, smoke) for name in preset_names() for smoke in (False, True)
            if (load_spec(preset_path(name)).smoke is not None if smoke else name.startswith("digits_"))]


@pytest.mark.parametrize(("name", "smoke"), RUNNABLE)
def test_every_runnable_preset_plans_as_the_same_sweep_once_frozen(name, smoke, tmp_path):
    spec = load_spec(preset_path(name))
    text = apply_smoke(spec).to_yaml() if smoke else preset_path(name).read_text()
    assert frozen_again(text, name, Store(tmp_path)) == ("same", "same", "same")


# ----- generated specs ------------------------------------------------------------------------------

def yaml_number(value: float | int, scientific: bool) -> str:
    """As a user may write it: 0.0005 or 5e-4 (YAML 1.2 reads both as the float)."""
    if isinstance(value, bool | int) or not scientific:
        return repr(value)
    return format(Decimal(repr(value)), "e")


def yaml_flow(value, scientific: bool) -> str:
    """A value as YAML flow text: JSON's quoting for strings (so "yes" and "1e3" stay strings), numbers as written."""
    import json

    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {yaml_flow(v, scientific)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_flow(v, scientific) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return yaml_number(value, scientific)


KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
SCALARS = (st.booleans() | st.integers(-10**6, 10**6)
           | st.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda v: abs(v) < 1e300)
           | st.sampled_from(["yes", "no", "on", "1e3", "5e-4", "null", "~", "0x10", "2024-06-01", "true"])
           | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                      max_leaves=8)
OPTIONS = st.dictionaries(KEYS, VALUES, max_size=4)


SPEC = """\
name: prop
dataset: {{name: digits_any_options, options: {dataset_options}}}
model: {{name: small_cnn, width: 4}}
augmentations: [{{policy: none}}, {{policy: crop, strength: [1, 2]}}]
data_sizes: [40, 80]
seeds: [0, 1]
budget: {{steps: 4, batch_size: 8}}
optimizer: {{lr: 5e-2, weight_decay: 5e-4, warmup_steps: 1}}
eval_sets: {eval_sets}
execution: {{plugins: [augworth_test_plugin]}}
"""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dataset_options=OPTIONS, eval_options=st.lists(OPTIONS, min_size=1, max_size=3), scientific=st.booleans())
def test_a_spec_with_any_options_plans_as_the_same_sweep_once_frozen(dataset_options, eval_options, scientific,
                                                                      tmp_path_factory):
    eval_sets = "[test, " + ", ".join(f"{{name: any_options, label: e{i}, options: {yaml_flow(o, scientific)}}}"
                                      for i, o in enumerate(eval_options)) + "]"
    text = SPEC.format(dataset_options=yaml_flow(dataset_options, scientific), eval_sets=eval_sets)
    spec = parse_spec(text, "prop.yaml")
    assert canonical_options(spec.dataset.options) == canonical_options(dataset_options)  # read as written
    assert frozen_again(text, "prop.yaml", Store(tmp_path_factory.mktemp("store"))) == ("same", "same", "same")


def test_options_in_another_order_or_as_tuples_are_the_same_options_and_other_values_are_not():
    assert canonical_options({"b": [1, {"y": 2, "x": (3,)}], "a": 5e-4}) == \
        canonical_options([("a", 0.0005), ("b", ([1, {"x": [3], "y": 2}]))])
    assert canonical_options({"a": 3}) != canonical_options({"a": 3.0})  # a number keeps its type, as YAML does
    assert canonical_options({"a": True}) != canonical_options({"a": 1})
    assert canonical_options({"a": ["x"]}) != canonical_options({"a": "x"})


def test_a_label_whose_options_changed_is_still_refused(tmp_path):
    store = Store(tmp_path)
    text = SPEC.format(dataset_options="{}", eval_sets="[{name: any_options, label: e, options: {c: [a, b]}}]")
    assert frozen_again(text, "s.yaml", store) == ("same", "same", "same")
    from augworth.search_spaces import SpecError

    with pytest.raises(SpecError, match=r"eval set 'e' is any_options \{\"c\":\[\"a\",\"b\"\]\} in the sweep's "
                                        r"frozen spec and any_options \{\"c\":\[\"b\",\"a\"\]\} here"):
        plan_sweep(text.replace("[a, b]", "[b, a]"), "s.yaml", store, extend=True)
