"""The runtime: calendar, planner, engine, store and dispatch. It never imports lark.

``plan(ir, people, start, overrides=...)`` is the pure core: every action of a
compiled campaign for every person, with its time.
"""

from cadence.runtime.people import Person, RowProblem
from cadence.runtime.planner import Action, Plan, PlanError, Planner, plan

__all__ = ["Action", "Person", "Plan", "PlanError", "Planner", "RowProblem", "plan"]
