"""DuckDB storage: connection, migrations, writes and reads."""
