"""The runtime: calendar, planner, engine, store and dispatch. It never imports lark."""
