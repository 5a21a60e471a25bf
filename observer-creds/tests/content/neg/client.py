def connect(settings):
    token = get_token(settings)
    password = settings.password
    api_key = os.environ["API_KEY"]
    return hf_hub_download_function(token, password, api_key)
