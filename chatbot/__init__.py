"""FAQ chatbot: residents ask in everyday Japanese; the bot answers from the city's FAQ or says
honestly where to ask. Core modules here import nothing from the web stack."""
