"""The long-running programs of the appliance (capture, gears, web) and the one-shot tools."""
