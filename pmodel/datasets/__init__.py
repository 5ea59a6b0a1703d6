"""Built-in datasets with exact P_data (fashion, pixels, land), and readers for users' own data."""
