"""aca-sessions: run notebook cells in Azure Container Apps dynamic sessions."""
