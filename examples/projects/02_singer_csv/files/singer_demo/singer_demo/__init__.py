"""A Singer-style demo: ``tap-demo`` emits SCHEMA/RECORD/STATE messages as JSON lines on
stdout, ``target-demo-csv`` writes the records to CSV files and prints the final state."""
