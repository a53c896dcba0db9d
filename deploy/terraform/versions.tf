terraform {
  required_version = ">= 1.6, < 2.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
  }

  # State in S3 with locking; the bucket is created once, by hand or by a bootstrap stack, before `terraform init`:
  #   terraform init -backend-config="bucket=..." -backend-config="key=credit-scoring/terraform.tfstate" \
  #     -backend-config="region=eu-central-1"
  backend "s3" {
    use_lockfile = true
    encrypt      = true
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      project     = "credit-scoring"
      environment = var.environment
      managed-by  = "terraform"
    }
  }
}
