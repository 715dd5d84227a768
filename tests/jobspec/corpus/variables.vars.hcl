replicas = 4
region   = "eu-west"
labels = {
  team = "platform"
  env  = "prod"
}
